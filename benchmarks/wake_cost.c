/* wake_cost.c: CPU cost and lateness of one timed wake-up on this machine, for three timers.
 *
 *   gcc -O2 -o /tmp/wake_cost benchmarks/wake_cost.c
 *   flock /tmp/barfast-bench.lock taskset -c 0 /tmp/wake_cost GAP_NS MODE N
 *   MODE 0: epoll_pwait2 relative ns timeout (what loop.pxi uses), 1: clock_nanosleep(TIMER_ABSTIME),
 *   2: timerfd (absolute) + epoll_wait. Prints thread CPU per wake-up and lateness p50/p99.
 * Why: each open-loop send at a low rate costs one such wake-up, and each response another; this
 * bounds how close open-loop CPU per request can get to a closed loop's (benchmarks/README.md).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <unistd.h>
static long long now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1000000000LL+t.tv_nsec;}
static double cpu(){struct rusage r;getrusage(RUSAGE_THREAD,&r);return r.ru_utime.tv_sec+r.ru_utime.tv_usec/1e6+r.ru_stime.tv_sec+r.ru_stime.tv_usec/1e6;}
int main(int argc,char**argv){
  long gap=atol(argv[1]); int mode=atoi(argv[2]); int n=atoi(argv[3]);
  prctl(PR_SET_TIMERSLACK,1,0,0,0);
  int ep=epoll_create1(0); struct epoll_event ev[8];
  int tfd=timerfd_create(CLOCK_MONOTONIC,TFD_NONBLOCK); struct epoll_event e={.events=EPOLLIN}; epoll_ctl(ep,EPOLL_CTL_ADD,tfd,&e);
  double c0=cpu(); long long t=now(); long long lat=0; long long *L=malloc(n*8);
  for(int i=0;i<n;i++){ t+=gap; long long d=t-now(); 
    if(mode==0){ if(d>0){struct timespec ts={d/1000000000,d%1000000000}; epoll_pwait2(ep,ev,8,&ts,NULL);} }
    else if(mode==1){ struct timespec ts={t/1000000000,t%1000000000}; clock_nanosleep(CLOCK_MONOTONIC,TIMER_ABSTIME,&ts,NULL);}
    else if(mode==2){ struct itimerspec its={{0,0},{t/1000000000,t%1000000000}}; timerfd_settime(tfd,TFD_TIMER_ABSTIME,&its,NULL); epoll_wait(ep,ev,8,-1); unsigned long long x; read(tfd,&x,8);}
    long long l=now()-t; L[i]=l; lat+=l; }
  double c=cpu()-c0;
  // p50/p99 of lateness
  int cmp(const void*a,const void*b){long long x=*(long long*)a,y=*(long long*)b;return x<y?-1:x>y;}
  qsort(L,n,8,cmp);
  printf("gap %ld us mode %d: cpu %.2f us/wake, late p50 %.1f p99 %.1f us\n",gap/1000,mode,c/n*1e6,L[n/2]/1e3,L[n*99/100]/1e3);
}
