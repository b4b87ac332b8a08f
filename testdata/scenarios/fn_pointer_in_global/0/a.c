/* a, version 0 (see main.c) */
typedef int (*int_fn)(int);

int op(int x) { return x + 1; }

static int twice(int x) { return 2 * x; }

int_fn a_twice_ptr(void) { return twice; }

int_fn a_ops[2] = {op, twice};
