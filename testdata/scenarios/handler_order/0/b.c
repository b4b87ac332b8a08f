/* b, version 0 (see main.c): two before handlers, registered in the order
 * #1, #2 although #2 is defined first. */
#include <stdio.h>

#include "hcr.h"

int c_value(void);

static void b_before_2(void) { printf("before b #2\n"); }
static void b_before_1(void) { printf("before b #1\n"); }
static void b_after(void) { printf("after b\n"); }

HCR_ON_RELOAD(b_handlers)
{
    hcr_on_before_reload(b_before_1);
    hcr_on_after_reload(b_after);
    hcr_on_before_reload(b_before_2);
}

int b_value(void) { return 10 + c_value(); }
