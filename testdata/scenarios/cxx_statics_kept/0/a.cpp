// a, version 0 (see main.c)
static int seed(int x)
{
    return x * 10;
}

inline int in_inline()
{
    static int n = 0;
    return ++n;
}

template <typename T> int in_template()
{
    static T n = T(sizeof(T));
    return int(++n);
}

int in_plain()
{
    static int n = 5;
    {
        static int m = 0;
        m += 2;
    }
    return ++n;
}

int guarded()
{
    static int g = seed(7); // not constant: a guard variable (_ZGV...)
    return ++g;
}

extern "C" int cxx_values(int *out)
{
    out[0] = in_inline();
    out[1] = in_template<int>();
    out[2] = in_template<long>();
    out[3] = in_plain();
    out[4] = guarded();
    return 5;
}
