/* a, version 1 (see main.c) */
int a_value(void) { return 1; }
