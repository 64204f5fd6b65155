#include "crash.h"

#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <memory>
#include <mutex>

namespace mx::engine {
namespace {

constexpr int kSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
struct sigaction previous[sizeof kSignals / sizeof kSignals[0]];
thread_local bool reportHere = false;

int IndexOf(int sig) {
  for (size_t i = 0; i < sizeof kSignals / sizeof kSignals[0]; i++)
    if (kSignals[i] == sig) return static_cast<int>(i);
  return -1;
}

// Only async-signal-safe calls below (write, sigaction, raise); backtrace() was called once at install so that
// its first use here does not load libgcc.
void Put(const char* s) {
  ssize_t n = write(STDERR_FILENO, s, strlen(s));
  (void)n;
}

void PutHex(uintptr_t v) {
  char buf[2 + 2 * sizeof v + 1];
  char* p = buf + sizeof buf;
  *--p = '\0';
  do {
    *--p = "0123456789abcdef"[v & 0xf];
    v >>= 4;
  } while (v);
  *--p = 'x';
  *--p = '0';
  Put(p);
}

void OnFatal(int sig, siginfo_t* info, void* uctx) {
  int i = IndexOf(sig);
  // Ours: a fault of this thread's code, or its own abort() (tgkill from this process). A kill(2) from outside
  // may land on any thread and is not an engine crash.
  bool ours = reportHere && (info->si_code > 0 || (info->si_code == SI_TKILL && info->si_pid == getpid()));
  if (!ours) {
    // Not ours: hand the signal to whoever handled it before.
    const struct sigaction& old = previous[i];
    if (old.sa_flags & SA_SIGINFO) {
      old.sa_sigaction(sig, info, uctx);
      return;
    }
    if (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN) {
      old.sa_handler(sig);
      return;
    }
    sigaction(sig, &old, nullptr);
    if (sig == SIGABRT || info->si_code <= 0) raise(sig);  // sent, not a fault: deliver it again
    return;                                                 // a fault: the instruction faults again
  }
  char name[16] = "?";
  pthread_getname_np(pthread_self(), name, sizeof name);
  Put("meshext: fatal ");
  Put(sigabbrev_np(sig) ? "SIG" : "signal ");
  Put(sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
  Put(" on thread ");
  Put(name);
  if (sig != SIGABRT) {
    Put(" (address ");
    PutHex(reinterpret_cast<uintptr_t>(info->si_addr));
    Put(")");
  }
  Put("; backtrace (resolve with addr2line -e <file> <offset>):\n");
  void* frames[64];
  int n = backtrace(frames, 64);
  backtrace_symbols_fd(frames, n, STDERR_FILENO);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
  if (sig == SIGABRT || info->si_code <= 0) raise(sig);
}

}  // namespace

void InstallCrashReport() {
  static std::once_flag once;
  std::call_once(once, [] {
    void* warm[1];
    backtrace(warm, 1);
    for (size_t i = 0; i < sizeof kSignals / sizeof kSignals[0]; i++) {
      struct sigaction sa {};
      sa.sa_sigaction = OnFatal;
      sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
      sigemptyset(&sa.sa_mask);
      sigaction(kSignals[i], &sa, &previous[i]);
    }
  });
}

namespace {
// A stack of its own for the handler, so that a stack overflow on an engine thread is reported too.
struct AltStack {
  std::unique_ptr<char[]> mem;
  AltStack() : mem(new char[kSize]) {
    stack_t ss{};
    ss.ss_sp = mem.get();
    ss.ss_size = kSize;
    if (sigaltstack(&ss, nullptr) != 0) mem.reset();
  }
  ~AltStack() {
    if (!mem) return;
    stack_t ss{};
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, nullptr);
  }
  static constexpr size_t kSize = 64 * 1024;
};
}  // namespace

void MarkCrashReportThread() {
  thread_local AltStack stack;
  reportHere = true;
}

}  // namespace mx::engine
