/* static_renumbered_nested — function statics keep their values when the compiler
 * renumbers them (gcc names `static int n;` `n.N` with one counter for the
 * whole file; adding or moving a static anywhere changes the numbers).
 *
 * a v0: counter() { static int n; }, g() { static int k; }, h() with another
 *       `n`, nest() with an outer and a nested-block `n`.
 * a v1: fresh() (no static in v0) moved first with a new `n`, g() moved and given a second static
 *       before k, nest() and counter() reordered: every value goes on.
 */
#include <stdio.h>

#include "scenario.h"

int counter(void);
int g(void);
int h(void);
int nest(int w);
int fresh(void);

static void show(const char *v)
{
    int a = counter();
    int b = counter();
    int c = counter();
    int k = g();
    int hh = h();
    int o = nest(0);
    int i = nest(1);
    printf("%s: counter %d %d %d, g %d, h %d, nest %d %d\n", v, a, b, c, k, hh, o, i);
}

int main(void)
{
    show("v0");
    scenario_rebuild(1);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    show("v1");
    printf("v1: fresh %d\n", fresh());
    fflush(stdout);
    return 0;
}
