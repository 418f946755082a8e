"""Capacity search (`barfast search`): logic.py chooses the rates (ramp, bisection, repeats, stop
reasons) as a pure function; command.py runs each as a short open-loop trial and reports."""
