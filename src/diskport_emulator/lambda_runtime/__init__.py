"""Lambda's runtime, emulated: the template's functions called in this process, or each instance in a process."""
