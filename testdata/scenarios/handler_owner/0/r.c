/* r, version 0 (see main.c): registers b_bye, a function of module b */
#include "hcr.h"

void b_bye(void);

void r_install(void) { hcr_on_after_reload(b_bye); }
