/* b, version 2 (see main.c) */
extern int shared_counter; /* module a */

void b_bump(void) { shared_counter += 1000; }
