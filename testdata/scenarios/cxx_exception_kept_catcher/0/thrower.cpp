// thrower, version 0 (see main.c)
#include <stdexcept>
int thrower(int x)
{
    if (x > 2)
        throw std::runtime_error("too big (v0)");
    return x;
}
