"""MiCLIP (methods.md Sec. 9; MiCLIP paper Secs. 3, 4): a linear neuron encoder E_n from a site's units
into a reference CLIP's embedding space, trained with symmetric InfoNCE against the reference image
embedding (input-grounded) and the text embedding of the target model's predicted concept
(output-grounded); unit embeddings, localisation (Eq. 3) and description (Eq. 4); the baselines
(Act-Values, CLIP-Dissect soft-WPMI, Network Dissection IoU, random units); the interventions of
Eq. 5 on neurons and SAE latents and their zero-shot Delta Acc; the paper's tables.
"""
