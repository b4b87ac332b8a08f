/* a, version 1 (see main.c): imports nothing */
int a_tick(void) { return -1; }
