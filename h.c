#include <stdio.h>
#include <time.h>
int main(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);fprintf(stderr,"XMARK %f main\n",t.tv_sec+t.tv_nsec*1e-9);}
