/* constructor_order — top-level code (constructors) of a module runs once, at
 * the module's first load, never again; several constructors of one module
 * run in source order; every constructor of every module runs before the
 * first HCR_ON_RELOAD block.
 *
 * First load (init order a, main): a's constructors 1 and 2 (source order,
 * though an HCR_ON_RELOAD block sits between them), main's constructor, then
 * the blocks of a and main.
 * Step 1: a changes (its constructors print other text and a third one is
 * added) and imports the new module b.  a's constructors do not run (a is
 * not new); b's two constructors run (b is new), then the blocks of the
 * changed and new modules in the new order b, a.  Two modules reloaded.
 */
#include <stdio.h>

#include "scenario.h"

int a_value(void);

__attribute__((constructor)) static void main_ctor(void)
{
    printf("main: constructor\n");
}

HCR_ON_RELOAD(main_on_reload) { printf("main: on_reload\n"); }

int main(void)
{
    printf("main: a_value() = %d\n", a_value());
    scenario_rebuild(1);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    printf("main: a_value() = %d\n", a_value());
    fflush(stdout);
    return 0;
}
