/* a, version 0 (see main.c) */
int a_value(void) { return 0; }
