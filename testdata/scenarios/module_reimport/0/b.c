/* b (see main.c): never edited; dropped at step 1, imported again at step 2 */
#include <stdio.h>

#include "hcr.h"

int b_count = 10;

__attribute__((constructor)) static void b_ctor(void)
{
    printf("b: constructor (b_count=%d)\n", b_count);
}

static void b_before(void) { printf("b: before (b_count=%d)\n", b_count); }
static void b_after(void) { printf("b: after (b_count=%d)\n", b_count); }

HCR_ON_RELOAD(b_handlers)
{
    printf("b: on_reload\n");
    hcr_on_before_reload(b_before);
    hcr_on_after_reload(b_after);
}

int b_tick(void) { return ++b_count; }
