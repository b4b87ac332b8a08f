/* creature.c — how the creature behaves and looks.  Edit and save while the
 * demo runs: the next tick uses the new code, the world keeps its state. */
#include "demo.h"

/* EDIT ME: the creature's brain: -1 step left, +1 step right, 0 rest.
 * (To see the crash guard at work, add `return c->x / (c->x - c->x);` as the
 * first line, save, then remove it again.) */
int creature_decide(const struct creature *c, int food)
{
    if (c->energy == 0)
        return 0; /* too tired: rest a tick */
    if (food < 0)
        return c->dir; /* nothing to eat: keep wandering */
    return food > c->x ? 1 : (food < c->x ? -1 : 0);
}

/* EDIT ME: change the creature's glyph */
char creature_glyph(const struct creature *c)
{
    (void)c;
    return '@';
}

/* EDIT ME: what the creature says */
const char *creature_says(const struct creature *c)
{
    if (c->energy == 0)
        return "zzz";
    if (c->meals == 0)
        return "hungry...";
    if (c->energy > 25)
        return "so full!";
    return "";
}
