/* a, version 1: g first, with a second static k in a nested block */
int last_nested = -1;
int last_m = -1;

int g(void)
{
    static int k;
    int r = k++;
    {
        static int k = 50;
        last_nested = k++;
    }
    return r;
}

int counter(void)
{
    static int n;
    return ++n;
}

int last_m_value(void)
{
    return last_m;
}
