/* a, versions 0 and 2 (see main.c): imports b */
int b_tick(void);

int a_tick(void) { return b_tick(); }
