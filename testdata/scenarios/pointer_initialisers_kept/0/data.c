/* data, version 0 (see main.c) */
#include <stdio.h>

static const int levels[3] = {1, 5, 10};
static const int speeds[3] = {7, 5, 20};
const int *cur_levels = levels;
const int *cur_speeds = speeds;
const char *shortmsg = "short v0";
const char *longmsg = "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL v0";

void show(const char *when)
{
    printf("%s (code v0): levels[2]=%d speeds[2]=%d shortmsg=%s longmsg=...%s\n", when,
           cur_levels[2], cur_speeds[2], shortmsg, longmsg + 68);
}
