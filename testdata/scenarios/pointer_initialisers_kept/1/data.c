/* data, version 1 (see main.c) */
#include <stdio.h>

static const int levels[3] = {1, 5, 11};
static const int speeds[3] = {7, 5, 21};
const int *cur_levels = levels;
const int *cur_speeds = speeds;
const char *shortmsg = "short v1";
const char *longmsg = "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL v1";

void show(const char *when)
{
    printf("%s (code v1): levels[2]=%d speeds[2]=%d shortmsg=%s longmsg=...%s\n", when,
           cur_levels[2], cur_speeds[2], shortmsg, longmsg + 68);
}
