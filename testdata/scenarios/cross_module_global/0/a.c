/* a, version 0 (see main.c) */
int shared_counter = 1;

void a_bump(void) { shared_counter += 10; }
