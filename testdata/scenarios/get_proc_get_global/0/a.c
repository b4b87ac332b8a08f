/* a, version 0 (see main.c) */
int counter = 5;
static int secret = 3;

int value_of(void) { return 100; }

int a_read_counter(void) { return counter; }

int a_bump_secret(void) { return ++secret; }
