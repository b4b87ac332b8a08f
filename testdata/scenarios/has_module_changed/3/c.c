/* c, new at step 3, removed from the tree at step 4 (see main.c) */
#include <stdio.h>

#include "hcr.h"

static void show(const char *who)
{
    printf("%s: main=%d a=%d b=%d c=%d\n", who, hcr_has_module_changed("main"),
           hcr_has_module_changed("a"), hcr_has_module_changed("b"),
           hcr_has_module_changed("c"));
}

static void c_after(void) { show("c after"); }

HCR_ON_RELOAD(c_handlers) { hcr_on_after_reload(c_after); }

int c_value(void) { return 3; }
