/* b, version 0 (see main.c) */
#include <stdio.h>

#include "hcr.h"

static void show(const char *who)
{
    printf("%s: main=%d a=%d b=%d c=%d\n", who, hcr_has_module_changed("main"),
           hcr_has_module_changed("a"), hcr_has_module_changed("b"),
           hcr_has_module_changed("c"));
}

static void b_before(void) { show("b v0 before"); }
static void b_after(void) { show("b v0 after"); }

HCR_ON_RELOAD(b_handlers)
{
    hcr_on_before_reload(b_before);
    hcr_on_after_reload(b_after);
}

int b_value(void) { return 0; }
