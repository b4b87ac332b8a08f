/* a, version 1 (see main.c) */
int shared_counter = 50; /* changed initialiser: no effect */

void a_bump(void) { shared_counter += 100; }
