/* a, version 3 (see main.c) */
int a_version(void) { return 3; }
