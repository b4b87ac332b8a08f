/* several_on_reload_blocks — several HCR_ON_RELOAD blocks of one module run
 * in source order (the compiler may emit their section entries in another
 * order), after the module's constructors, at every load of the module (the
 * first one included) and only when the module changed or is new.
 *
 * main imports a and b (init order a, b, main).
 *   load:   a's blocks 1, 2, 3; b's block; main's blocks 1, 2.
 *   step 1: a changes, a new block is inserted between 2 and 3 -> a's blocks
 *           run in the new source order: 1, 2, inserted, 3 (b, main do not).
 *   step 2: only b changes -> only b's block runs.
 *   step 3: a changes again and keeps two blocks, in swapped source order.
 * a_loads counts a's loads; it is a kept global.
 */
#include <stdio.h>

#include "scenario.h"

int a_value(void);
int b_value(void);

HCR_ON_RELOAD(main_block_1) { printf("main: block 1\n"); }
HCR_ON_RELOAD(main_block_2) { printf("main: block 2\n"); }

__attribute__((constructor)) static void main_ctor(void)
{
    printf("main: constructor\n");
}

int main(void)
{
    int step;

    printf("main: a=%d b=%d\n", a_value(), b_value());
    for (step = 1; step <= 3; step++) {
        scenario_rebuild(step);
        printf("main: step %d reloaded %d\n", step,
               scenario_checked(hcr_perform_code_reload()));
    }
    fflush(stdout);
    return 0;
}
