#include <stdio.h>
#include <stdlib.h>

int shared_counter = 100;
int big_table[4096];
const int primes[8] = {2, 3, 5, 7, 11, 13, 17, 19};
const char *const greetings[3] = {"hello", "hi", "hey"};

static int square(int x) { return x * x; }
static int cube(int x) { return x * x * x; }

int lib_add(int a, int b) { return a + b + square(0); }

int lib_switch(int x) {
    switch (x) {
    case 0: return 10;
    case 1: return 21;
    case 2: return square(x) + 1;
    case 3: return 43;
    case 4: return cube(x);
    case 5: return 65;
    case 6: return 76;
    case 7: return 87;
    case 8: return primes[x - 1];
    case 9: return 109;
    default: return -x;
    }
}

int (*lib_get_static_fn(void))(int) { return cube; }
int (*lib_fn_ptr)(int) = square;
int *lib_big_ptr(void) { return &big_table[4000]; }
const char *lib_literal(void) { return "a string literal in lib"; }
int (*lib_public_ptr(void))(int, int) { return &lib_add; }

__attribute__((weak)) int weak_or_strong(void) { return 1; }

static int cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }
int lib_qsort_sum(void) {
    int v[6] = {5, 3, 9, 1, 7, 2};
    qsort(v, 6, sizeof v[0], cmp);
    return v[0] * 100000 + v[1] * 10000 + v[2] * 1000 + v[3] * 100 + v[4] * 10 + v[5];
}
