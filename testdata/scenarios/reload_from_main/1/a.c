/* a, version 1 (see main.c) */
int work(int x) { return 10 * x; }

int a_version(void) { return 1; }
