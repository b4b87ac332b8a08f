/* b, version 0 (see main.c) */
int b_value(void) { return 0; }
