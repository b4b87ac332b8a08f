/* a, version 0 (see main.c) */
int table[2] = {1, 2};
void a_fill(void) { table[0] = 10; table[1] = 20; }
