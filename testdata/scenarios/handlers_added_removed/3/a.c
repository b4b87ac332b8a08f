/* a, version 3 (see main.c): no handlers */
int a_value(void) { return 3; }
