/* a, version 0 (see main.c) */
int legacy(int x) { return x + 41; }

int (*a_hook)(int) = legacy;

int a_version(void) { return 0; }
