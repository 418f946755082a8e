/* wake_cost.c: CPU cost and lateness of one wake-up on this machine, timed or woken by another CPU.
 *
 *   gcc -O2 -o /tmp/wake_cost benchmarks/wake_cost.c
 *   flock /tmp/barfast-bench.lock taskset -c 0 /tmp/wake_cost GAP_NS MODE N [BACKSTOP_NS]
 *   MODE 0: epoll_pwait2 relative ns timeout (what loop.pxi uses), 1: clock_nanosleep(TIMER_ABSTIME),
 *   2: timerfd (absolute) + epoll_wait,
 *   3: woken by an event: a child process pinned to CPU 1 spins to each due time and writes an
 *      eventfd; this thread blocks in epoll_wait(-1) on it and reads it (how a closed loop is woken
 *      by its server's response on loopback: the waker's CPU runs the wake-up),
 *   4: as 3, but each wait also arms a timeout BACKSTOP_NS (default 50 us) after the due time
 *      (epoll_pwait2), which the event always beats: what a backstop timer that never fires costs.
 *   Prints this thread's CPU per wake-up (RUSAGE_THREAD: what a generator's CPU figure would bill)
 *   and lateness p50/p99; modes 3-4 also print the waker's time inside write() per wake-up (it runs
 *   the wake-up: the eventfd's wait-queue callback and the IPI to this CPU), timed by clock reads
 *   around the call on a CPU it has to itself (rusage would not do: its sys/user split is
 *   tick-sampled, and the waker's spin is periodic).
 * Why: each open-loop send at a low rate costs one timed wake-up, and a closed loop one wake-up
 * per response that its server's CPU pays for in part; this bounds how close open-loop CPU per
 * request can get to a closed loop's (benchmarks/README.md).
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>
static long long now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1000000000LL+t.tv_nsec;}
static double cpu(int who){struct rusage r;getrusage(who,&r);return r.ru_utime.tv_sec+r.ru_utime.tv_usec/1e6+r.ru_stime.tv_sec+r.ru_stime.tv_usec/1e6;}
static int cmp(const void*a,const void*b){long long x=*(const long long*)a,y=*(const long long*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){
  if(argc<4){fprintf(stderr,"usage: wake_cost GAP_NS MODE N [BACKSTOP_NS]\n");return 2;}
  long gap=atol(argv[1]); int mode=atoi(argv[2]); int n=atoi(argv[3]);
  long long backstop=argc>4?atoll(argv[4]):50000;
  prctl(PR_SET_TIMERSLACK,1,0,0,0);
  int ep=epoll_create1(0); struct epoll_event ev[8];
  int tfd=timerfd_create(CLOCK_MONOTONIC,TFD_NONBLOCK); struct epoll_event e={.events=EPOLLIN}; epoll_ctl(ep,EPOLL_CTL_ADD,tfd,&e);
  int efd=eventfd(0,EFD_NONBLOCK);
  double *waker=mmap(NULL,4096,PROT_READ|PROT_WRITE,MAP_SHARED|MAP_ANONYMOUS,-1,0);
  long long t0=now()+20000000LL; pid_t child=-1;
  if(mode>=3){
    epoll_ctl(ep,EPOLL_CTL_DEL,tfd,NULL); epoll_ctl(ep,EPOLL_CTL_ADD,efd,&e);
    child=fork();
    if(child==0){ cpu_set_t s; CPU_ZERO(&s); CPU_SET(1,&s); sched_setaffinity(0,sizeof s,&s);
      uint64_t one=1; long long in_write=0;
      for(int i=1;i<=n;i++){ long long t=t0+(long long)i*gap; while(now()<t){}
        long long w0=now(); if(write(efd,&one,8)!=8) _exit(1); in_write+=now()-w0; }
      waker[0]=(double)in_write/n; _exit(0);}
  }
  double c0=cpu(RUSAGE_THREAD); long long t=mode>=3?t0:now(); long long *L=malloc(n*8);
  int m=0; /* wake-ups (events may coalesce in modes 3-4: one wake-up then serves several) */
  for(int i=0;i<n;i++){ t+=gap; long long d=t-now(); m++;
    if(mode==0){ if(d>0){struct timespec ts={d/1000000000,d%1000000000}; epoll_pwait2(ep,ev,8,&ts,NULL);} }
    else if(mode==1){ struct timespec ts={t/1000000000,t%1000000000}; clock_nanosleep(CLOCK_MONOTONIC,TIMER_ABSTIME,&ts,NULL);}
    else if(mode==2){ struct itimerspec its={{0,0},{t/1000000000,t%1000000000}}; timerfd_settime(tfd,TFD_TIMER_ABSTIME,&its,NULL); epoll_wait(ep,ev,8,-1); unsigned long long x; if(read(tfd,&x,8)<0){} }
    else { uint64_t x; for(;;){ int r;
        if(mode==3) r=epoll_wait(ep,ev,8,-1);
        else { long long dd=t+backstop-now(); if(dd<0) dd=0; struct timespec ts={dd/1000000000,dd%1000000000}; r=epoll_pwait2(ep,ev,8,&ts,NULL);}
        if(r>0 && read(efd,&x,8)==8) break; }
      long long late=now()-t; for(uint64_t k=1;k<x && i+1<n;k++){ L[i++]=late; t+=gap; } } /* coalesced */
    L[i]=now()-t; }
  double c=cpu(RUSAGE_THREAD)-c0;
  if(child>0) waitpid(child,NULL,0);
  qsort(L,n,8,cmp);
  printf("gap %ld us mode %d: cpu %.2f us/wake, late p50 %.1f p99 %.1f us",gap/1000,mode,c/m*1e6,L[n/2]/1e3,L[n*99/100]/1e3);
  if(m<n) printf(" (%d wake-ups for %d events)",m,n);
  if(mode>=3) printf(", waker %.2f us in write() per wake",waker[0]/1e3);
  printf("\n"); return 0;
}
