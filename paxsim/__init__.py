"""paxsim: airport camera analytics testbed whose privacy controls are measured under load."""
