/* a, version 0 (see main.c) */
int last_nested = -1;
int last_m = -1;

int counter(void)
{
    static int n;
    return ++n;
}

int g(void)
{
    static int k;
    return k++;
}

int last_m_value(void)
{
    return last_m;
}
