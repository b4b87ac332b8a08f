/* reg, version 2 (see main.c) */
#include "hcr.h"

void log_reload(void);

HCR_ON_RELOAD(install) { hcr_on_after_reload(log_reload); }

int reg_value(void) { return 2; }
