// thrower, version 1 (see main.c): a new message, and a frame more
#include <stdexcept>
static int deeper(int x)
{
    if (x > 2)
        throw std::runtime_error("too big (v1)");
    return 10 * x;
}
int thrower(int x) { return deeper(x) + 1; }
