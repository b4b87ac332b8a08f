/* a, version 1 (see main.c): the table grows */
int table[4] = {5, 6, 7, 8};
void a_fill(void) { table[0] = 10; table[1] = 20; table[2] = 30; table[3] = 40; }
