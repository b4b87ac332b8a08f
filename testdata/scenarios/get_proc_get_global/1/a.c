/* a, version 1 (see main.c) */
int counter = 500;       /* changed initialiser: no effect */
static int secret = 300; /* changed initialiser: no effect */

int value_of(void) { return 200; }

int a_read_counter(void) { return counter + 1000; }

int a_bump_secret(void) { return ++secret; }

int new_fn(void) { return 7; }
