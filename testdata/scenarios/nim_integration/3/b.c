/* b, version 1 (nimhcr_1_1.nim): new at step 3, its top-level code runs once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hcr.h"

int g_1 = 8; /* devilish! */

int f_1(void)
{
    static int a = 1; /* a {.global.} local: initialised once, kept */
    a++;
    return a;
}

/* all these constructs should work in top-level code */
static int some_glob_1 = 1;
static int counter = 3;

struct Type1 {
    int a;
    int b;
};
static struct Type1 t = {42, 11};

struct obj {
    int dat;
    char str[8];
};
struct pair {
    int first;
    struct obj *second;
};
static int aa = 0;
static struct obj *bb = 0;

static void in_block(int num) { printf("   1: %d\n", num); }

static struct pair foo(void)
{
    struct pair p;
    p.first = 1;
    p.second = malloc(sizeof *p.second);
    p.second->dat = 3;
    strcpy(p.second->str, "bar");
    return p;
}

__attribute__((constructor)) static void b_top_level(void)
{
    struct pair p;

    printf("   1: print me once!\n");
    printf("   1: %d\n", some_glob_1);
    if (some_glob_1) {
        int some_glob_2 = 2;
        printf("   1: %d\n", some_glob_2);
        if (some_glob_2) {
            int some_glob_3 = 3;
            printf("   1: %d\n", some_glob_3);
        }
    }
    {
        int some_glob_4 = 4;
        in_block(some_glob_4);
    }
    while (counter > 0) {
        int some_glob_5 = 5;
        printf("   1: %d\n", some_glob_5);
        counter--;
    }
    printf("   1: Type1.a:%d\n", t.a);
    p = foo(); /* let (aa, bb) = foo() */
    aa = p.first;
    bb = p.second;
}

static void b_after(void)
{
    printf("%d\n", aa);
    printf("%s\n", bb->str);
}

HCR_ON_RELOAD(b_handlers) { hcr_on_after_reload(b_after); }
