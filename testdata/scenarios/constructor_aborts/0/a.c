/* module a, version 0: no imports. */
int a_value(void) { return 1; }
