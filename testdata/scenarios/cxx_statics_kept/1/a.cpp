// a, version 1: new statics and functions before the old ones, bodies
// changed; every old static goes on from its value.
static int seed(int x)
{
    return x * 1000;
}

int added()
{
    static int n = 99;
    return ++n;
}

int guarded()
{
    static int first = seed(1);
    static int g = seed(7);
    return ++g + 0 * first;
}

int in_plain()
{
    static int extra = 1;
    static int n = 5;
    {
        static int m = 0;
        m += 2;
    }
    return ++n + 0 * extra;
}

template <typename T> int in_template()
{
    static T n = T(sizeof(T));
    return int(++n);
}

inline int in_inline()
{
    static int n = 0;
    return ++n;
}

extern "C" int cxx_values(int *out)
{
    out[0] = in_inline();
    out[1] = in_template<int>();
    out[2] = in_template<long>();
    out[3] = in_plain();
    out[4] = guarded() + 0 * added();
    return 5;
}
