/* a, version 1 (see main.c) */
typedef int (*int_fn)(int);

int op(int x) { return x + 100; }

static int twice(int x) { return 3 * x; } /* now triples */

int_fn a_twice_ptr(void) { return twice; }

int_fn a_ops[2] = {op, twice};
