// A crash on an engine thread says where before the process dies: without it a SIGSEGV in the data plane ends
// the agent without a word (and on the VIP path the first symptom users see is DNS failing open).
#pragma once

namespace mx::engine {

/**
 * Installs handlers for SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT (once per process). On a thread marked with
 * MarkCrashReportThread they write `meshext: fatal SIGSEGV on thread mx-engine-0 (address 0x...)` and a
 * backtrace to stderr, then let the signal take its default action (core dump). On any other thread the
 * handler that was installed before (V8's WebAssembly trap handler, say) runs as if this one were not there.
 */
void InstallCrashReport();

/** Marks the calling thread as one whose fatal signals are reported. */
void MarkCrashReportThread();

}  // namespace mx::engine
