/* a, version 2 (see main.c) */
int work(int x) { return 100 * x; }

int a_version(void) { return 2; }
