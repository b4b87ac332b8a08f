/* a, version 1 (see main.c) */
int a_version(void) { return 1; }
