"""A small labelled set for tuning the example-sentence threshold: (example, what a caller said, same intent?).

The examples are what a user would type into a signal definition; the utterances are what a transcript
segment looks like (Whisper's punctuation, fillers, near-misses on the same topic as hard negatives).
"""

from __future__ import annotations

PAIRS: tuple[tuple[str, str, bool], ...] = (
    # cancellation
    ("Please cancel my account", "I want to cancel my subscription.", True),
    ("Please cancel my account", "Yeah, I'd like to close my account today.", True),
    ("I'd like to terminate my plan", "I want to end my contract with you.", True),
    ("I'd like to terminate my plan", "Can you stop my membership, I don't need it anymore.", True),
    ("Please cancel my account", "I need to cancel the service, please.", True),
    ("Please cancel my account", "Can I add another user to my account?", False),
    ("I'd like to terminate my plan", "What plans do you have for small businesses?", False),
    ("Please cancel my account", "What time do you open on Saturday?", False),
    ("Please cancel my account", "My password doesn't work on the website.", False),
    # appointment booking
    ("I'd like to book an appointment", "Can I schedule a visit for next Tuesday?", True),
    ("I'd like to book an appointment", "Do you have any openings tomorrow morning to come in?", True),
    ("I'd like to book an appointment", "I need to make a reservation for Friday.", True),
    ("I'd like to book an appointment", "How much does the service cost?", False),
    ("I'd like to book an appointment", "Thanks for calling, have a great day.", False),
    # price
    ("How much does it cost?", "What's the price for the premium package?", True),
    ("How much does it cost?", "Is it expensive to get this installed?", True),
    ("How much does it cost?", "What's your monthly fee?", True),
    ("How much does it cost?", "Where is your office located?", False),
    ("How much does it cost?", "My name is John Smith.", False),
    # complaint / escalation
    ("I want to speak to a manager", "Can I talk to your supervisor please?", True),
    ("I want to speak to a manager", "Let me speak with someone in charge.", True),
    ("I want to speak to a manager", "Can you transfer me to billing?", False),
    ("I'm very unhappy with the service", "This is the worst service I've ever had.", True),
    ("I'm very unhappy with the service", "I'm really frustrated, nothing has worked for weeks.", True),
    ("I'm very unhappy with the service", "The technician was great, thank you.", False),
    ("I'm very unhappy with the service", "Can I pay with a credit card?", False),
    # refund
    ("I want my money back", "I'd like a refund for last month's charge.", True),
    ("I want my money back", "Can you reverse the payment you took?", True),
    ("I want my money back", "I'd like to update my billing address.", False),
    ("I want my money back", "I want to buy another one.", False),
    # purchase
    ("I want to buy it", "Okay, let's go ahead and place the order.", True),
    ("I want to buy it", "I'll take it, sign me up.", True),
    ("I want to buy it", "I'm just looking for information for now.", False),
    ("I want to buy it", "The weather is lovely today.", False),
    # agent greetings and sign-offs, for balance
    ("Thank you for calling", "Thanks so much for calling us today.", True),
    ("Thank you for calling", "I'm calling about my bill.", False),
)
