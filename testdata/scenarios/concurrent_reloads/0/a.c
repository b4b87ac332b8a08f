/* a, version 0 (see main.c) */
int a_version(void) { return 0; }
