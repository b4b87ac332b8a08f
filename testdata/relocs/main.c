#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int shared_counter;
extern int big_table[4096];
extern const int primes[8];
extern const char *const greetings[3];
int lib_add(int a, int b);
int lib_switch(int x);
int (*lib_get_static_fn(void))(int);
extern int (*lib_fn_ptr)(int);
int *lib_big_ptr(void);
const char *lib_literal(void);
int weak_or_strong(void);
int lib_qsort_sum(void);
int (*lib_public_ptr(void))(int, int);

extern int maybe_missing(void) __attribute__((weak));

static int local_static = 7;
static int local_array[2000];
static const char *local_names[] = {"zero", "one", "two"};
static int twice(int x) { return 2 * x; }
int (*main_fp)(int) = twice;

int main(void) {
    local_array[1500] = 15;
    shared_counter += 5;
    big_table[4000] = 40;
    printf("add %d\n", lib_add(2, 3));
    for (int i = -1; i < 12; i++) printf("switch %d -> %d\n", i, lib_switch(i));
    printf("static fn via ptr %d\n", lib_get_static_fn()(10));
    printf("fn ptr global %d\n", lib_fn_ptr(4));
    printf("main fp %d\n", main_fp(21));
    printf("same address %d\n", lib_public_ptr() == &lib_add);
    printf("big %d %d\n", *lib_big_ptr(), big_table[4000]);
    printf("literal %s %zu\n", lib_literal(), strlen(lib_literal()));
    printf("primes %d %d\n", primes[0], primes[7]);
    printf("greetings %s %s\n", greetings[0], greetings[2]);
    printf("local %d %d %s\n", local_static, local_array[1500], local_names[2]);
    printf("weak %d\n", weak_or_strong());
    printf("weak undefined %d\n", maybe_missing ? maybe_missing() : -1);
    printf("qsort %d\n", lib_qsort_sum());
    printf("counter %d\n", shared_counter);
    fprintf(stderr, "stderr works\n");
    return 0;
}
