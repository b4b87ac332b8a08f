/* a, version 0 (see main.c): no handlers */
int a_value(void) { return 0; }
