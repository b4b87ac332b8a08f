// Allocation-heavy C++ (hcr-bench alloc): maps of strings, vectors of
// strings and a growing vector, built and freed 100 times.
#include <vector>
#include <string>
#include <map>
#include <cstdio>
#include <chrono>
int main(int argc, char**argv){
  auto t0=std::chrono::steady_clock::now();
  size_t total=0;
  for(int it=0; it<100; it++){
    std::map<int,std::string> m;
    std::vector<std::string> vv;
    for(int i=0;i<20000;i++){ m[i]=std::string(40,'a'+i%26); vv.push_back(std::string(20+i%50,'x'));}
    std::vector<int> big; for(int i=0;i<300000;i++) big.push_back(i);
    for(auto&p:m) total+=p.second.size();
    for(auto&v:vv) total+=v.size();
    total+=big.size();
  }
  double ms=std::chrono::duration<double,std::milli>(std::chrono::steady_clock::now()-t0).count();
  fprintf(stderr,"%.1f ms\n",ms);
  printf("%zu\n", total);
  return 0;
}
