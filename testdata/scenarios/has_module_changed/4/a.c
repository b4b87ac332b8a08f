/* a, version 4 (see main.c) */
#include <stdio.h>

#include "hcr.h"

static void show(const char *who)
{
    printf("%s: main=%d a=%d b=%d c=%d\n", who, hcr_has_module_changed("main"),
           hcr_has_module_changed("a"), hcr_has_module_changed("b"),
           hcr_has_module_changed("c"));
}

static void a_before(void) { show("a v4 before"); }
static void a_after(void) { show("a v4 after"); }

HCR_ON_RELOAD(a_handlers)
{
    hcr_on_before_reload(a_before);
    hcr_on_after_reload(a_after);
}

int a_value(void) { return 4; }
