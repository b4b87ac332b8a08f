/* a, version 0 (see main.c) */
int work(int x) { return x + 1; }

int a_version(void) { return 0; }
