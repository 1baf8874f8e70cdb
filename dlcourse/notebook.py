"""Helpers for the course's notebooks: lessons show the engine's code where it teaches something, without defining it."""
import inspect

__all__ = ['show_source']


def show_source(*objs):  # functions, classes or Numba kernels of the package
    "Display the source of `objs` (as the package defines them), highlighted, one block"
    from IPython.display import Code
    return Code('\n\n'.join(inspect.getsource(getattr(o, 'py_func', o)).rstrip() for o in objs), language='python')
